"""The ranking prompt a judge uses when its template is blank (placeholder: J1 writes the
shipped text, equal to worker/judging/prompt.py's DEFAULT_TEMPLATE; a test checks both agree)."""

DEFAULT_JUDGE_TEMPLATE = """You rank responses to a prompt, best first.

Guidelines:
{guidelines}

Principles:
{principles}

Prompt:
{prompt}

Responses:
{samples}
"""
