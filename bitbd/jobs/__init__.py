"""Durable background jobs on Taskiq + Redis streams; the truth about each job lives in PostgreSQL."""
