"""Workload tools: simulate a swarm, stress and crash a file, measure capacity, run the demo."""
