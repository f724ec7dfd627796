"""AWS entry points: the Lambda handler for the HTTP API and the API Gateway authorizer."""
