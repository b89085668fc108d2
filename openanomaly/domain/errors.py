"""The project's exceptions. Every message says what went wrong and what to do.

Each class says whether retrying can help (``retryable``): a database or model server that
failed may answer the next time; a bad configuration, query or pipeline fails the same way
on every try. Schedulers read the policy with ``is_retryable`` instead of keeping lists.
"""

from typing import ClassVar


class OpenAnomalyError(Exception):
    """Base class of every error this project raises on purpose."""

    retryable: ClassVar[bool] = False


def is_retryable(error: BaseException) -> bool:
    """True when running the same work again may succeed; False for anything the project
    does not know (a bug repeats on every retry)."""
    return isinstance(error, OpenAnomalyError) and error.retryable


class ConfigError(OpenAnomalyError):
    """The configuration or a pipeline spec is invalid."""


class TSDBError(OpenAnomalyError):
    """The time series database failed or refused a request."""

    retryable = True


class TSDBUnavailable(TSDBError):
    """The database could not be reached, or kept failing after the retries."""


class QueryRejected(TSDBError):
    """The database rejected a query (bad PromQL, too many points, ...)."""

    retryable = False


class WriteRejected(TSDBError):
    """The database rejected a remote-write request with a non-retryable status."""

    retryable = False


class BadResponse(TSDBError):
    """The database answered with something that is not a valid API response (not JSON,
    missing fields, non-numeric samples); the same request gets the same answer."""

    retryable = False


class ResponseTooLarge(TSDBError):
    """An answer is larger than the configured byte limit; it is refused before it is
    decoded, so a query that matches too much cannot exhaust the memory."""

    retryable = False


class ModelError(OpenAnomalyError):
    """A model could not be found, loaded or run."""

    retryable = True


class UnknownModel(ModelError):
    """A pipeline names a model that is not configured."""

    retryable = False


class ModelRejected(ModelError):
    """A model server refused the request itself (over its limits, invalid, or not
    authorised): the same request is refused again on every try."""

    retryable = False


class FactoryError(ModelError, ConfigError):
    """A custom model's factory cannot be imported or called as configured: a model error
    (the model server answers 422) that retrying cannot fix, like a configuration error."""

    retryable = False


class MissingExtra(ModelError, ConfigError):
    """A configured model needs an optional package that is not installed."""

    retryable = False


class PipelineError(OpenAnomalyError):
    """A pipeline run cannot proceed with the data it got."""


class TooManySeries(PipelineError):
    """The query returned more series than the pipeline's max_series."""


class ShardDataMissing(PipelineError):
    """A shard's data expired before a worker scored it (the queue was backed up for
    longer than the shard store keeps it); the slot is read and split again once the
    claim of the worker that read it expires."""


class UnknownPipeline(PipelineError):
    """No pipeline of that name is configured."""


class ReadOnlyStore(ConfigError):
    """A change was asked of a store that only reads (pipelines from a YAML file)."""


class StoreConflict(OpenAnomalyError):
    """A change clashes with the stored state: a name already taken, or a stale version."""


class VersionConflict(StoreConflict):
    """The pipeline changed since the version the change was made against."""


class AlreadyExists(StoreConflict):
    """A pipeline, user or token of that name exists already."""


class UnknownUser(OpenAnomalyError):
    """No user of that name (or no token of that id)."""


class OutOfOrderSamples(WriteRejected):
    """The database holds newer samples of a written series and takes no older ones (no
    out-of-order window): a re-run of a written slot, or history written without
    ``storage.tsdb.out_of_order_time_window``."""


class DuplicateSamples(WriteRejected):
    """The database already holds a different value at a written timestamp.

    Prometheus answers this for a re-run of a slot whose samples differ from the first run;
    callers that re-run a slot can treat it as "already written".
    """
