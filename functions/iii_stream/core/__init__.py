"""The domain: models, rules and services. Nothing here imports boto3."""
