"""The HTTP service: the contract (replies, problem documents, one status table), the FastAPI
app, the direct ``POST /generate-cert`` route and the node-side routes.
"""
