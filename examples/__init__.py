"""Example custom nodes used by ``pipelines/examples/*.yaml`` (``type: python:examples...``)."""
