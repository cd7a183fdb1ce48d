// Package logkey holds the one set of structured-log keys every package of
// podsecrets logs with, so that a query for a pod or a volume finds every
// line about it, whichever package wrote it.
package logkey

// Keys of log attributes. Values are names, codes and versions, never a
// secret value or a token.
const (
	VolumeID       = "volume_id"
	Namespace      = "namespace"
	Pod            = "pod" // the pod's name; Namespace goes beside it
	ServiceAccount = "service_account"
	Class          = "class"
	Provider       = "provider"
	Code           = "code"
	Error          = "error"
	DurationMS     = "duration_ms"
	Objects        = "objects" // "id@version" of each object
	State          = "state"   // a volume's state (volume.State)
	Why            = "why"     // what made it that state
	Reason         = "reason"  // an event reason
	Message        = "message" // an event's message
	Target         = "target"
	Bytes          = "bytes"
	Region         = "region"
	FailoverRegion = "failover_region"
	Identity       = "identity"
	ObjectCount    = "object_count"
	Keys           = "keys"   // names of parameter keys
	Cached         = "cached" // whether credentials came from the cache
	Endpoint       = "endpoint"
	Node           = "node"
	Version        = "version"
	HTTP           = "http"
	RetryInS       = "retry_in_s" // seconds until a failed rotation check is retried
	Revision       = "revision"   // a workload revision, "Kind/name"
	Record         = "record"     // a SecretVersionRecord's name
	Taint          = "taint"      // a node taint's key
)
