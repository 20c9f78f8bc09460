#!/bin/bash
# The entrypoint of the kafka service (the official apache/kafka image): one KRaft node with
# SASL/SCRAM-SHA-512 on every client listener, SASL/PLAIN on the controller listener, and the
# StandardAuthorizer (deny unless an ACL allows). It writes the broker's configuration itself
# (the image's KAFKA_* variables cannot carry a JAAS line: it drops values that hold '='), formats
# the storage on the first start with one SCRAM user per service (`kafka-storage format
# --add-scram`), and starts the broker. topics-init then creates the topics and the ACLs
# (local_stack.kafka_acls.service_acls) as the admin user. The same setup as local_stack's
# secure mode (local_stack/kafka_security.py), which tests/local_stack/test_kafka_acls.py runs.
#
# Users: admin (super user: setup, the broker's inter-broker identity), controller (super user,
# PLAIN, controller listener only), and uploader, minio, inference, retrain, facade, review. A user added
# to an existing cluster, or a new password, is set with kafka-configs.sh (docs/DEPLOY.md).
set -euo pipefail

: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_CONTROLLER_PASSWORD:?}"
KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
CONFIG_DIR="${KAFKA_CONFIG_DIR:-/opt/kafka/config}"
DATA_DIR="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
HOST="${KAFKA_HOST:-kafka}"
INTERNAL_PORT="${KAFKA_INTERNAL_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
EXTERNAL_PORT="${KAFKA_EXTERNAL_LISTENER_PORT:-9094}"
EXTERNAL_ADVERTISED="${KAFKA_EXTERNAL_ADVERTISED:-localhost:29092}"
BIND="${KAFKA_BIND_HOST:-0.0.0.0}"
SERVICES="uploader minio inference retrain facade review"

# A password goes into a JAAS line in double quotes and into `--add-scram '...=[name=N,password=P]'`.
# The placeholders of .env.example are refused: replace them before the first start.
check_password() {
    if [[ ! "$2" =~ ^[A-Za-z0-9._~+/@%^*:-]{8,128}$ ]]; then
        echo "kafka: the password of $1 must be 8 to 128 of [A-Za-z0-9._~+/@%^*:-]" >&2
        exit 2
    fi
    if [[ "$2" == change-me* ]]; then
        echo "kafka: the password of $1 is still the placeholder of .env.example; set it in .env" >&2
        exit 2
    fi
}
check_password admin "$KAFKA_ADMIN_PASSWORD"
check_password controller "$KAFKA_CONTROLLER_PASSWORD"
scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]")
for user in $SERVICES; do
    var="KAFKA_${user^^}_PASSWORD"
    password="${!var:?set $var}"
    check_password "$user" "$password"
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
done

umask 077  # the configuration holds the super users' passwords
mkdir -p "$CONFIG_DIR"
config="$CONFIG_DIR/battery-ct-server.properties"
scram_login="org.apache.kafka.common.security.scram.ScramLoginModule required"
cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=INTERNAL://$BIND:$INTERNAL_PORT,EXTERNAL://$BIND:$EXTERNAL_PORT,CONTROLLER://$BIND:$CONTROLLER_PORT
advertised.listeners=INTERNAL://$HOST:$INTERNAL_PORT,EXTERNAL://$EXTERNAL_ADVERTISED
listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=$scram_login username="admin" password="$KAFKA_ADMIN_PASSWORD";
listener.name.external.scram-sha-512.sasl.jaas.config=$scram_login;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$KAFKA_CONTROLLER_PASSWORD" user_controller="$KAFKA_CONTROLLER_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
log.dirs=$DATA_DIR
# One node: the internal topics (offsets, transaction state) must accept one replica, or
# transactional producers never get a coordinator.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
num.partitions=${KAFKA_NUM_PARTITIONS:-4}
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
PROPERTIES

# What the health check (and an operator's kafka-*.sh tools) connect with.
cat > "$CONFIG_DIR/admin-client.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$scram_login username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPERTIES

# The first start formats the storage, its first metadata holding the SCRAM users; later starts keep it.
"$KAFKA_HOME/bin/kafka-storage.sh" format --cluster-id "$CLUSTER_ID" --config "$config" --ignore-formatted "${scram[@]}"
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$config"
