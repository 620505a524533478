"""Adapters: the AWS side of each port. Each takes its boto3 client; none creates one."""
