"""media-pipeline's client (`media_pipeline.client`) and its command line
(`media-pipeline`, `media_pipeline.cli`)."""
