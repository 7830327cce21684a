"""Every error Modelport raises on purpose.

Domain errors know nothing of HTTP; `modelport.serving.errors` maps them to status
codes at the edge, and the CLI maps them to exit codes. Each message says what was
wrong, where, and how to fix it.

    ModelportError
    ├── InvalidInput                 a request or file the user sent is malformed (400)
    │   ├── SignatureMismatch        columns/types/shapes do not match the signature
    │   └── InvalidConfig            modelport.yaml or a setting is invalid
    ├── NotFound                     a model, version, alias, endpoint ... does not exist (404)
    ├── Conflict                     the change clashes with current state (409)
    ├── UntrustedArtifact            loading would run code the user has not trusted (400)
    ├── ArtifactError                an artifact is missing, corrupt or fails its hash (422)
    ├── UnknownFlavor                no runtime for that flavor / flavor not detected (400)
    ├── PayloadTooLarge              request body over the configured limit (413)
    ├── Unauthenticated              no API key, or one that is unknown or revoked (401)
    ├── Forbidden                    the key's scopes do not cover the route (403)
    ├── RateLimited                  the key (or client) is over its rate (429)
    ├── DeadlineExceeded             the request's deadline passed; its work was cancelled (504)
    ├── Unavailable                  the thing exists but cannot serve now (503)
    │   ├── ModelLoading             the model is still loading; retry after a moment
    │   └── Overloaded               the model's queue is full: shed, retry after a moment
    ├── PredictionFailed             the runtime raised while predicting (500)
    └── DeliveryError                a receiver did not take an alert notification
                                     (recorded with the incident; never an HTTP answer)
"""

from __future__ import annotations


class ModelportError(Exception):
    """Base of every error Modelport raises on purpose."""

    code: str = "modelport_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        body = {"error": str(self), "code": self.code}
        if self.hint:
            body["hint"] = self.hint
        return body


class InvalidInput(ModelportError):
    code = "invalid_input"


class SignatureMismatch(InvalidInput):
    code = "signature_mismatch"


class InvalidConfig(InvalidInput):
    code = "invalid_config"


class NotFound(ModelportError):
    code = "not_found"


class Conflict(ModelportError):
    code = "conflict"


class UntrustedArtifact(ModelportError):
    code = "untrusted_artifact"


class ArtifactError(ModelportError):
    code = "artifact_error"


class UnknownFlavor(ModelportError):
    code = "unknown_flavor"


class PayloadTooLarge(ModelportError):
    code = "payload_too_large"


class Unauthenticated(ModelportError):
    code = "unauthenticated"


class Forbidden(ModelportError):
    code = "forbidden"


class RateLimited(ModelportError):
    code = "rate_limited"

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class DeadlineExceeded(ModelportError):
    code = "deadline_exceeded"


class Unavailable(ModelportError):
    code = "unavailable"

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ModelLoading(Unavailable):
    code = "model_loading"


class Overloaded(Unavailable):
    code = "overloaded"


class PredictionFailed(ModelportError):
    code = "prediction_failed"


class DeliveryError(ModelportError):
    """A receiver did not accept a notification.

    ``retryable`` is false where trying again cannot help (a 4xx answer, a refused
    recipient, a bad login); ``retry_after`` is the receiver's own hint in seconds.
    """

    code = "delivery_failed"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.body = body
        self.retryable = retryable
        self.retry_after = retry_after
