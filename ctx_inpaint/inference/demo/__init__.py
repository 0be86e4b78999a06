"""The web demo: a FastAPI app serving the page and the REST API, its model registry, Host/Origin guard and server."""
