"""media-pipeline: the application logic behind the Chalice entry points in app.py."""
