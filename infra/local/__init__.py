"""The local service: the real handlers behind local stand-ins for API Gateway, Lambda and DynamoDB."""
