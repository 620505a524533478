"""iii-stream for AWS: the iii stream model on API Gateway, Lambda and DynamoDB."""

__version__ = "0.1.0"
