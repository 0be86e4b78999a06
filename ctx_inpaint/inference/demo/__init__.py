"""The web demo: starting it (``launch``), a FastAPI app serving the page and the REST API (``app``), its model
registry, Host/Origin guard, example photos and uvicorn server."""
