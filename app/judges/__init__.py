"""Model judges (RLAIF): annotators of kind "model" that rank tasks through the queue."""
