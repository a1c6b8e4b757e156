"""Project service tests share the admin tests' cheap password hashing."""

from tests.admin.conftest import cheap_password_hashing

__all__ = ["cheap_password_hashing"]
