"""What every ioc-stream component stands on, and imports no component.

- `foundation.settings`: the one typed settings object (`IOC_*`, `KAFKA_BOOTSTRAP_SERVERS`,
  `DATABASE_URL`);
- `foundation.errors`: the one exception tree, each error with its reason code;
- `foundation.kafka_client`: Kafka client options (security) for aiokafka and Faust;
- `foundation.observability`, `foundation.probes`: /metrics and /healthz, service probes;
- `foundation.state_dir`: the state directory;
- `foundation.contract`: topic names, the event envelope, the catalog, and one codec per
  record kind that crosses a topic;
- `foundation.auth`: signed tokens (wall, officers, leaders) and department API keys.
"""

__version__ = "0.1.0"
