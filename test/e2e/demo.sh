#!/usr/bin/env bash
# make demo: a real one-node cluster with podsecrets, a secret in the fake AWS store, and a pod
# that reads it with its own identity (IRSA through the fake STS).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cluster/lib.sh"
need_root
"$here/e2e.sh" up
aws="http://$(node_ip):${PODSECRETS_E2E_AWS_PORT:-4566}"
ns=demo
role="arn:aws:iam::111122223333:role/demo-app"

log "storing demo secrets in the fake AWS store ($aws)"
# The second jwt-key version becomes AWSCURRENT, the first AWSPREVIOUS.
curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- "$aws/_fake/seed" >/dev/null <<JSON
{
  "roles": [{"arn": "$role", "subjects": ["system:serviceaccount:$ns:app"],
             "allow": ["arn:aws:secretsmanager:*:*:secret:demo/*", "arn:aws:ssm:*:*:parameter/demo/*"]}],
  "secrets": [
    {"region": "us-east-1", "name": "demo/db", "value": "{\"username\":\"demo\",\"password\":\"correct-horse-battery-staple\"}"},
    {"region": "us-east-1", "name": "demo/jwt-key", "value": "signing-key-v1"},
    {"region": "us-east-1", "name": "demo/jwt-key", "value": "signing-key-v2"}
  ],
  "parameters": [{"region": "us-east-1", "name": "/demo/greeting", "value": "hello from SSM", "type": "String"}]
}
JSON

log "creating namespace $ns, a ServiceAccount bound to $role, a SecretProviderClass and a pod"
kctl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
kctl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: $ns
  annotations: {eks.amazonaws.com/role-arn: "$role"}
---
apiVersion: podsecrets.dev/v1
kind: SecretProviderClass
metadata: {name: app-secrets, namespace: $ns}
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: demo/db
        objectType: secretsmanager
        jmesPath:
          - {path: username, objectAlias: db-user}
          - {path: password, objectAlias: db-password, filePermission: "0440"}
      - {objectName: demo/jwt-key, objectType: secretsmanager, objectVersionLabel: AWSCURRENT, objectAlias: jwt-current}
      - {objectName: demo/jwt-key, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS, objectAlias: jwt-previous}
      - {objectName: /demo/greeting, objectType: ssmparameter, objectAlias: greeting}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: $ns}
spec:
  serviceAccountName: app
  automountServiceAccountToken: false
  securityContext: {runAsUser: 1000, fsGroup: 2000}
  containers:
    - name: app
      image: $E2E_BUSYBOX_IMAGE
      imagePullPolicy: Never
      command: [sh, -c, 'cd /mnt/secrets; echo "== files in /mnt/secrets (uid \$(id -u), groups \$(id -G))"; ls -lL; for f in *; do echo "== \$f"; cat \$f; echo; done; echo "== mount"; grep /mnt/secrets /proc/mounts; exec sleep 3600']
      volumeMounts: [{name: secrets, mountPath: /mnt/secrets, readOnly: true}]
  volumes:
    - name: secrets
      csi:
        driver: csi.podsecrets.dev
        readOnly: true
        volumeAttributes: {secretProviderClass: app-secrets}
YAML
kctl -n "$ns" wait --for=condition=Ready pod/app --timeout=120s >/dev/null
log "the pod's view of its secrets (kubectl -n $ns logs app):"
kctl -n "$ns" logs app
log "the driver's audit line for this mount (who fetched which object and version, never a value):"
kctl -n kube-system logs -l app.kubernetes.io/name=podsecrets --tail=-1 | grep '"volume published"' | grep "\"namespace\":\"$ns\"" | tail -1
log "no Kubernetes Secret was created in $ns: $(kctl -n "$ns" get secrets --no-headers 2>/dev/null | wc -l) secrets"
cat <<EOT

Explore:
  export KUBECONFIG=$E2E_KUBECONFIG PATH=$E2E_BIN:\$PATH
  kubectl -n $ns get pod app; kubectl -n $ns logs app
  kubectl -n kube-system logs ds/podsecrets
  curl -s $aws/_fake/calls          # store calls made so far
Tear down:
  make demo-down
EOT
