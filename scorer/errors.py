"""The scorer's exceptions.

Every error the scorer raises on purpose is a `ScorerError`. Its `retriable`
flag drives the stream layer's choice between retrying and dead-lettering:
bad input is never retriable (retrying cannot fix it), broker trouble is.
"""

from __future__ import annotations


class ScorerError(Exception):
    """Base of every error the scorer raises on purpose."""

    retriable: bool = False


class InvalidFileError(ScorerError):
    """A document the user wrote (an ICP, routes.yaml, a collector mapping)
    failed validation; `problems` name the offending keys."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


class InvalidICPError(InvalidFileError):
    """An ICP document failed validation; `problems` name the offending keys."""


class InvalidInputError(ScorerError):
    """An input document is unusable.

    `reason` is a short machine label (used as the DLQ header and metric
    label); `detail` names fields, never payload values, so it is safe to log.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class BrokerError(ScorerError):
    """Kafka could not be reached or refused a request; worth retrying."""

    retriable = True


class ConfigError(ScorerError):
    """The deployment cannot work as configured (say, topics with different
    partition counts); retrying does not help."""


class AccessDenied(ScorerError):
    """The broker refused an operation for want of an ACL. The message is one
    line naming the permission and the ACL that grants it (no credential);
    retrying cannot help, so a service stops on it."""
