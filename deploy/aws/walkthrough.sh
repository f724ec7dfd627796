#!/usr/bin/env bash
# From a deployed stack to a node call over mutual TLS (docs/aws.md, "Walkthrough").
# Inputs, from the stack's outputs (aws cloudformation describe-stacks):
#   POOL (UserPoolId), CLIENT (UserPoolClientId), API (ApiUrl, no trailing slash),
#   NODE_URL (https://<NodeDomainName>/nodes/node-1/status: any path of the node), and
#   two passwords: ADMIN_PASSWORD, ALICE_PASSWORD (the pool's policy: 12+ characters, with
#   upper and lower case letters and a digit).
set -euo pipefail
: "${POOL:?}" "${CLIENT:?}" "${API:?}" "${NODE_URL:?}" "${ADMIN_PASSWORD:?}" "${ALICE_PASSWORD:?}"
umask 077  # node-1.key is a private key: readable by you only.

# 1. An administrator: a Cognito user in the nodecert-admins group.
aws cognito-idp admin-create-user --user-pool-id "$POOL" --username admin \
    --message-action SUPPRESS >/dev/null
aws cognito-idp admin-set-user-password --user-pool-id "$POOL" --username admin \
    --password "$ADMIN_PASSWORD" --permanent
aws cognito-idp admin-add-user-to-group --user-pool-id "$POOL" --username admin \
    --group-name nodecert-admins

# 2. A user, alice. nodecert knows her by her token's `sub` (a UUID), not her user name.
aws cognito-idp admin-create-user --user-pool-id "$POOL" --username alice \
    --message-action SUPPRESS >/dev/null
aws cognito-idp admin-set-user-password --user-pool-id "$POOL" --username alice \
    --password "$ALICE_PASSWORD" --permanent
ALICE_SUB=$(aws cognito-idp admin-get-user --user-pool-id "$POOL" --username alice \
    --query "UserAttributes[?Name=='sub'].Value" --output text)

# 3. ID tokens (what API Gateway's Cognito authorizer takes).
token() {
    aws cognito-idp initiate-auth --client-id "$CLIENT" --auth-flow USER_PASSWORD_AUTH \
        --auth-parameters "USERNAME=$1,PASSWORD=$2" \
        --query AuthenticationResult.IdToken --output text
}
ADMIN_TOKEN=$(token admin "$ADMIN_PASSWORD")
ALICE_TOKEN=$(token alice "$ALICE_PASSWORD")

# 4. The admin registers node-1 with alice's sub as its owner.
curl --fail-with-body -sS -X PUT "$API/v1/nodes/node-1" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"owner\": \"$ALICE_SUB\"}"
echo

# 5. Alice asks for a certificate for node-1. Its Idempotency-Key is kept in node-1.request
#    until the certificate is saved, so running this again after a 503 (PCA throttled or
#    not reached) sends the same key and gets the certificate, never a second one. A 409
#    without a serialNumber means PCA may have signed (and billed) it already: delete
#    node-1.request to ask for a new certificate.
[ -s node-1.request ] || echo "walkthrough-$(openssl rand -hex 8)" >node-1.request
curl --fail-with-body -sS -X POST "$API/generate-cert" \
    -H "Authorization: Bearer $ALICE_TOKEN" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $(cat node-1.request)" \
    -d '{"nodeId": "node-1"}' >issued.json
jq -r .certificate issued.json >node-1.crt
jq -r .privateKey issued.json >node-1.key
rm issued.json node-1.request
openssl x509 -in node-1.crt -noout -subject -enddate

# 6. Alice calls node-1 through the mutual-TLS domain with that certificate.
curl --fail-with-body -sS --cert node-1.crt --key node-1.key "$NODE_URL"
echo
