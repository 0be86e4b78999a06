"""The web demo and REST API (``python -m ctx_inpaint.demo``, ``make demo``): paint a hole on a photo in the browser
and compare the model with OpenCV's Telea and Navier-Stokes fills. Needs the ``[demo]`` extra (FastAPI, uvicorn).

``app.create_app`` builds the FastAPI app; ``registry`` holds the models (loaded on first use, one call at a time
per model); ``static/`` is the page (no file from the internet); ``loadtest`` times the API under concurrent load.
"""
