"""Site agent for headcount: reports user sessions, receives pushes, enforces the sessions limit."""

__version__ = "0.1.0"
