"""Executors run a plan's jobs: `local` (processes on this machine)."""
