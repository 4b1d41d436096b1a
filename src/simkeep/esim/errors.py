"""Errors of the eSIM channel, with stable codes (docs/esim.md)."""

from __future__ import annotations

from simkeep.errors import AuthenticationFailed, Conflict, DomainError, NotFound


class EsimNotConfigured(DomainError):
    """No SM-DP+ is configured (SIMKEEP_ESIM_SMDP_URL), so no eSIM profile can be ordered."""

    code = "ESIM_NOT_CONFIGURED"


class SmdpError(DomainError):
    """The SM-DP+ answered a function with Failed or Expired: the step was refused, not lost.

    ``subject_code`` and ``reason_code`` are SGP.22's (section 5.2.6), e.g. 8.2.1 / 3.9 for an ICCID the
    SM-DP+ does not know.
    """

    code = "ESIM_SMDP_REFUSED"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: str = "Failed",
        subject_code: str = "",
        reason_code: str = "",
        subject_identifier: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            status=status,
            subject_code=subject_code,
            reason_code=reason_code,
        )
        self.status = status
        self.subject_code = subject_code
        self.reason_code = reason_code
        self.subject_identifier = subject_identifier


class SmdpUnavailable(SmdpError):
    """The SM-DP+ was unreachable, timed out or failed on its side (HTTP 5xx): the call may be repeated."""

    code = "ESIM_SMDP_UNAVAILABLE"
    retryable = True


class SmdpProtocolError(SmdpError):
    """The SM-DP+ answered something that is not ES2+ (wrong status, no function execution status)."""

    code = "ESIM_SMDP_BAD_ANSWER"


class EsimProfileNotFound(NotFound):
    """The order has no eSIM profile."""

    code = "ESIM_PROFILE_NOT_FOUND"


class EsimProfileNotReady(Conflict):
    """The profile is not in a state that allows what was asked (activation before installation ...)."""

    code = "ESIM_PROFILE_NOT_READY"


class CallbackUnauthenticated(AuthenticationFailed):
    """A handleDownloadProgressInfo call without the configured credentials."""

    code = "ESIM_CALLBACK_UNAUTHENTICATED"
