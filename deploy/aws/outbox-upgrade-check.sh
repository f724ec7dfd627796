#!/usr/bin/env sh
# After upgrading a stack deployed before the outbox table (docs/aws.md, "Upgrading a stack
# deployed before the outbox table"): how many revocations the older version queued, and
# audit entries it wrote, are still in the limits table. The sweep moves them to the outbox
# table on its next run; 0 means nothing of the older layout is left. Input: LIMITS_TABLE
# (the stack's LimitsTableName output); any arguments go to aws (--profile, --region).
set -eu
aws dynamodb scan --table-name "$LIMITS_TABLE" --select COUNT --consistent-read \
    --filter-expression \
    'begins_with(#k, :revoke) OR begins_with(#k, :sweep) OR begins_with(#k, :audit)' \
    --expression-attribute-names '{"#k": "key"}' \
    --expression-attribute-values \
    '{":revoke": {"S": "revoke#"}, ":sweep": {"S": "sweep#"}, ":audit": {"S": "audit#"}}' \
    --query Count --output text "$@"
