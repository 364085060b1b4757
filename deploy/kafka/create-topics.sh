#!/usr/bin/env bash
# deploy/kafka/create-topics.sh - create Conveyor's topics on a Kafka cluster: <prefix>.<type>
# for every job type. Run it once before the first conveyor-api or conveyor-worker starts
# with broker.transport = "kafka" (the brokers have auto.create.topics.enable=false), and
# again after an upgrade that adds a job type: a topic that exists is left as it is.
#
#   create-topics.sh [-x PREFIX] [-c ADMIN.properties] [-k KAFKA_HOME] [-m MIN_ISR] [-a USER]
#                    BOOTSTRAP PARTITIONS REPLICATION
#
#   BOOTSTRAP     host:port of any node (say kafka-1.internal:9092)
#   PARTITIONS    per topic: the most worker processes that read one job type at once (each
#                 partition is read by one member of the type's group; a process runs many
#                 jobs of one partition at once when their keys differ). Choose for the
#                 largest fleet expected: adding partitions later moves keys to other
#                 partitions, so an order's queued jobs could then run beside its newer ones.
#   REPLICATION   copies of each partition: 3 on the 3-node cluster of server.properties.template
#   -x PREFIX     broker.topic_prefix of the deployment (default conveyor)
#   -c FILE       client settings for the admin connection (kafka-topics.sh --command-config),
#                 e.g. security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512,
#                 sasl.jaas.config=... for the admin user, ssl.truststore.location=...
#   -k DIR        Kafka's installation (default /opt/kafka)
#   -m N          min.insync.replicas of the topics (default 2 with REPLICATION >= 3, else 1):
#                 with acks=all a write is acknowledged once N copies have it
#   -a USER       also grant the SCRAM user USER what Conveyor needs (kafka-acls.sh): write
#                 and read the topics PREFIX.*, read the consumer groups PREFIX.*. Nothing
#                 else: since Kafka 3.0 an idempotent producer needs no IdempotentWrite on
#                 the cluster (KIP-679), and Conveyor creates no topics.
#
# Keep TYPES in step with the job-type table (common/jobtype.c); tests/unit/test_jobtype.c
# checks that it is.
set -euo pipefail

TYPES="noop activation order-fetch carrier-post tracking-event tracking-poll tracking-push ml-notification"

usage() {
    sed -n '7,8p' "$0" | sed -e 's/^# *//' -e '1s/^/usage: /' -e '2s/^/       /' >&2
    exit 2
}

prefix=conveyor admin='' kafka=/opt/kafka min_isr='' user=''
while getopts 'x:c:k:m:a:h' opt; do
    case $opt in
    x) prefix=$OPTARG ;;
    c) admin=$OPTARG ;;
    k) kafka=$OPTARG ;;
    m) min_isr=$OPTARG ;;
    a) user=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 3 ] || usage
boot=$1 parts=$2 rf=$3
[[ "$parts" =~ ^[1-9][0-9]*$ ]] || { echo "create-topics: PARTITIONS must be a number > 0" >&2; exit 2; }
[[ "$rf" =~ ^[1-9][0-9]*$ ]] || { echo "create-topics: REPLICATION must be a number > 0" >&2; exit 2; }
# broker.topic_prefix's rule (common/cfg.c)
[[ "$prefix" =~ ^[A-Za-z0-9._-]{1,100}$ ]] ||
    { echo "create-topics: PREFIX must be 1..100 of A-Z a-z 0-9 . _ -" >&2; exit 2; }
# One copy may be missing (a node down or restarting) and writes still go on; never more
# than the copies there are, or every write would fail.
[ -n "$min_isr" ] || min_isr=$((rf >= 3 ? 2 : 1))
if ! [[ "$min_isr" =~ ^[1-9][0-9]*$ ]] || [ "$min_isr" -gt "$rf" ]; then
    echo "create-topics: MIN_ISR must be 1..REPLICATION" >&2
    exit 2
fi
[ -x "$kafka/bin/kafka-topics.sh" ] ||
    { echo "create-topics: no $kafka/bin/kafka-topics.sh (set -k)" >&2; exit 1; }

conn=(--bootstrap-server "$boot")
[ -z "$admin" ] || conn+=(--command-config "$admin")

for t in $TYPES; do
    # --if-not-exists: a second run changes nothing (use kafka-topics.sh --alter by hand to
    # add partitions, knowing the note on PARTITIONS above)
    "$kafka/bin/kafka-topics.sh" "${conn[@]}" --create --if-not-exists --topic "$prefix.$t" \
        --partitions "$parts" --replication-factor "$rf" \
        --config min.insync.replicas="$min_isr"
    echo "create-topics: $prefix.$t ($parts partitions, $rf copies, min.insync.replicas $min_isr)"
done

if [ -n "$user" ]; then
    acl=("$kafka/bin/kafka-acls.sh" "${conn[@]}" --add --allow-principal "User:$user")
    # the topics: the API and the workers produce (publishes, scheduled jobs coming due, the
    # sweep of recorded but unproduced jobs), the workers consume
    "${acl[@]}" --resource-pattern-type prefixed --topic "$prefix." \
        --operation Write --operation Read --operation Describe
    # one consumer group per type, named like its topic
    "${acl[@]}" --resource-pattern-type prefixed --group "$prefix." --operation Read \
        --operation Describe
    echo "create-topics: user $user may produce and consume $prefix.* and read its groups"
fi
