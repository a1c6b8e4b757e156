"""Training rounds: a state machine of stages run by workers, with progress and cancellation."""
