package driver

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/podsecrets/podsecrets/provider"
)

// Keys kubelet puts in volume_context (podInfoOnMount, ephemeral volumes,
// tokenRequests) and, from Kubernetes 1.35 with serviceAccountTokenInSecrets,
// in secrets.
const (
	keyPodName        = "csi.storage.k8s.io/pod.name"
	keyPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	keyPodUID         = "csi.storage.k8s.io/pod.uid"
	keyServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	keyEphemeral      = "csi.storage.k8s.io/ephemeral"
	keyTokens         = provider.TokensKey
	// keyClass is the pod's volumeAttributes key naming its class; the
	// Secrets Store CSI Driver uses the same key, so pod specs carry over.
	keyClass = "secretProviderClass"
)

// publishRequest is a NodePublishVolumeRequest parsed and checked once.
type publishRequest struct {
	volumeID string
	target   string
	class    string
	pod      provider.Pod
	fsGroup  *int64
	// attrs and secrets are kubelet's volume_context (without the
	// tokens, which are in pod) and node-publish secrets, for providers
	// that forward them.
	attrs   map[string]string
	secrets provider.Secrets
}

// classRef is the class as "namespace/name". Classes are read from the
// pod's namespace only (parsePublish refuses a namespace in the name), so
// this is the class's own reference.
func (pr *publishRequest) classRef() string { return pr.pod.Namespace + "/" + pr.class }

// invalidArgument marks errors caused by a malformed request.
type invalidArgument struct{ msg string }

func (e *invalidArgument) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &invalidArgument{msg: fmt.Sprintf(format, args...)}
}

// parsePublish validates req in the order csi-sanity and kubelet expect and
// returns the typed request. Token values are kept out of every message.
func parsePublish(req *csi.NodePublishVolumeRequest) (*publishRequest, error) {
	vc := req.GetVolumeContext()
	switch {
	case req.GetVolumeId() == "":
		return nil, invalid("volume_id is required")
	case req.GetTargetPath() == "":
		return nil, invalid("target_path is required")
	case req.GetVolumeCapability() == nil:
		return nil, invalid("volume_capability is required")
	case req.GetVolumeCapability().GetMount() == nil:
		return nil, invalid("volume_capability: only the mount access type is supported, not block")
	case vc[keyEphemeral] != "true":
		return nil, invalid("volume_context %s=%q: podsecrets serves inline ephemeral volumes only; "+
			"check that the CSIDriver lists volumeLifecycleModes [Ephemeral] and podInfoOnMount: true", keyEphemeral, vc[keyEphemeral])
	case vc[keyClass] == "":
		return nil, invalid("volume attribute %q is required: name the SecretProviderClass in the pod's volumeAttributes", keyClass)
	case strings.Contains(vc[keyClass], "/"):
		return nil, invalid("volume attribute %s=%q: a class is a plain name, read from the pod's own namespace; "+
			"create the class in the pod's namespace and name it without a namespace", keyClass, vc[keyClass])
	case vc[keyPodNamespace] == "" || vc[keyPodName] == "":
		return nil, invalid("volume_context lacks pod namespace/name: the CSIDriver needs podInfoOnMount: true")
	}
	r := &publishRequest{
		volumeID: req.GetVolumeId(),
		target:   req.GetTargetPath(),
		class:    vc[keyClass],
		pod: provider.Pod{
			Namespace:      vc[keyPodNamespace],
			Name:           vc[keyPodName],
			UID:            vc[keyPodUID],
			ServiceAccount: vc[keyServiceAccount],
		},
	}
	if g := req.GetVolumeCapability().GetMount().GetVolumeMountGroup(); g != "" {
		gid, err := strconv.ParseInt(g, 10, 64)
		if err != nil || gid < 0 || gid > 1<<31-1 {
			return nil, invalid("volume_mount_group %q is not a group id", g)
		}
		r.fsGroup = &gid
	}
	tokens := map[string]provider.Token{}
	// The secrets copy wins: it is where kubelet moves the tokens once the
	// CSIDriver opts in, and the only copy on newer clusters.
	for _, src := range []struct{ where, raw string }{
		{"volume_context", vc[keyTokens]},
		{"secrets", req.GetSecrets()[keyTokens]},
	} {
		if src.raw == "" {
			continue
		}
		if err := parseTokens(src.raw, tokens); err != nil {
			return nil, invalid("%s[%s]: %v", src.where, keyTokens, err)
		}
	}
	r.pod.Tokens = tokens
	r.attrs = make(map[string]string, len(vc))
	for k, v := range vc {
		if k != keyTokens {
			r.attrs[k] = v
		}
	}
	if s := req.GetSecrets(); s != nil {
		r.secrets = provider.Secrets(s)
	}
	return r, nil
}

// parseTokens decodes kubelet's audience → token map into into. The JSON
// error is not wrapped: its text could quote part of a token.
func parseTokens(raw string, into map[string]provider.Token) error {
	var m map[string]struct {
		Token               string    `json:"token"`
		ExpirationTimestamp time.Time `json:"expirationTimestamp"`
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return fmt.Errorf("not a JSON map of audience to {token, expirationTimestamp}")
	}
	for aud, t := range m {
		into[aud] = provider.Token{Value: t.Token, ExpiresAt: t.ExpirationTimestamp}
	}
	return nil
}
