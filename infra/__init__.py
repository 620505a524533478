"""What runs the service outside AWS (the local service) and what reads template.yaml."""
