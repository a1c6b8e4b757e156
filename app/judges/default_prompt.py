"""The default judge prompt, shown in the admin page when a judge's template is blank.

The one copy of the text: worker/judging/prompt.py imports it as DEFAULT_TEMPLATE (worker/ may
import app/, never the reverse).
"""

DEFAULT_JUDGE_TEMPLATE = """\
You are a careful reviewer ranking answers written by an AI assistant.

Guidelines from the project:
{guidelines}

Principles, most important first:
{principles}

The user's prompt:
{prompt}

The answers:
{samples}

Judge each answer against the guidelines and principles, not by its length or position.
Think briefly, then give your verdict on the last line."""
