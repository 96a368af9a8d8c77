import dagster as dg

# the steps that call the generator or S3 retry a failure after about 10 s, 30 s and 70 s (exponential, +-10 s jitter):
# an endpoint or store outage longer than the clients' own retries. Training has none: a re-execution resumes it from
# its checkpoint, and a retry here would only repeat a refusal.
FLAKY_STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
