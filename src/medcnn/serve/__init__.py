"""``medcnn serve``: a REST API and a web workbench over trained run folders (FastAPI + uvicorn)."""
