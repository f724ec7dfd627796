"""Verifiers: who is calling (OIDC/Cognito tokens, the built-in dev issuer, API Gateway claims)."""
