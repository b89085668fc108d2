"""The project's exceptions. Every message says what went wrong and what to do."""


class OpenAnomalyError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(OpenAnomalyError):
    """The configuration or a pipeline spec is invalid."""


class TSDBError(OpenAnomalyError):
    """The time series database failed or refused a request."""


class TSDBUnavailable(TSDBError):
    """The database could not be reached, or kept failing after the retries."""


class QueryRejected(TSDBError):
    """The database rejected a query (bad PromQL, too many points, ...)."""


class WriteRejected(TSDBError):
    """The database rejected a remote-write request with a non-retryable status."""


class ModelError(OpenAnomalyError):
    """A model could not be found, loaded or run."""


class UnknownModel(ModelError):
    """A pipeline names a model that is not configured."""


class FactoryError(ModelError, ConfigError):
    """A custom model's factory cannot be imported or called as configured: a model error
    (the model server answers 422) that retrying cannot fix, like a configuration error."""


class PipelineError(OpenAnomalyError):
    """A pipeline run cannot proceed with the data it got."""


class TooManySeries(PipelineError):
    """The query returned more series than the pipeline's max_series."""


class UnknownPipeline(PipelineError):
    """No pipeline of that name is configured."""


class DuplicateSamples(WriteRejected):
    """The database already holds a different value at a written timestamp.

    Prometheus answers this for a re-run of a slot whose samples differ from the first run;
    callers that re-run a slot can treat it as "already written".
    """
