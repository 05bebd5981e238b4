"""kopf handlers: thin glue from API events to the cache, the queue and the scheduler loop."""
