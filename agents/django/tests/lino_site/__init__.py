"""A minimal Lino site for the agent's tests (copied into a temporary directory per run)."""
