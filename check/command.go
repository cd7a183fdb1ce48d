package check

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/provider/aws"
)

// Usage is the help text of podsecrets check.
const Usage = `Usage: podsecrets check -f FILE [-f FILE ...] [--as NAMESPACE/SERVICEACCOUNT] [flags]

Checks SecretProviderClasses (apiVersion podsecrets.dev/v1 or secrets-store.csi.x-k8s.io/v1;
multi-document YAML, Lists, other kinds skipped) with the driver's own parsers: the class,
its parameters, the file names, unknown keys with the closest known one; and lists the files
a volume would hold. With --as it also reads every object from the store with that service
account's identity (a token from TokenRequest; the kubeconfig's user needs create on
serviceaccounts/token and get on serviceaccounts) and reports per object whether it was found,
its version and its files' sizes against --tmpfs-size. It never prints a value.

Exit codes: 0 every class would mount; 1 a class is invalid or an object (or the identity)
would fail the mount; 2 usage, an unreadable file, no class; 3 no problem found but the
cluster or the store could not be asked.

Flags:
`

// Main runs podsecrets check with args (after "check") and returns its exit
// code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("podsecrets check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files multiFlag
	fs.Var(&files, "f", "a file of classes to check, - for standard input (repeatable; required)")
	output := fs.String("o", "text", "output: text or json")
	as := fs.String("as", "", "NAMESPACE/SERVICEACCOUNT: read every object with this service account's identity")
	namespace := fs.String("n", "", "namespace of classes that name none (default: the --as namespace, else default)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file for --as (default $KUBECONFIG, else ~/.kube/config)")
	tmpfsSize := fs.String("tmpfs-size", "8Mi", "the driver's --tmpfs-size: what one volume may hold")
	region := fs.String("region", os.Getenv("AWS_REGION"), "AWS region of classes without a region parameter (the driver's --region; default $AWS_REGION)")
	podIdentity := fs.String("pod-identity-endpoint", os.Getenv("PODSECRETS_POD_IDENTITY_ENDPOINT"),
		"EKS Pod Identity agent for classes with usePodIdentity (reachable on nodes only; default as the driver's)")
	timeout := fs.Duration("timeout", time.Minute, "how long the whole check may take")
	fs.Usage = func() {
		fmt.Fprint(stderr, Usage)
		fs.PrintDefaults()
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "podsecrets check: "+format+"\n", a...)
		return ExitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments %q", fs.Args())
	case len(files) == 0:
		return usage("-f FILE is required")
	case *output != "text" && *output != "json":
		return usage("-o %q: want text or json", *output)
	}
	size, err := resource.ParseQuantity(*tmpfsSize)
	if err != nil || size.Value() <= 0 {
		return usage("--tmpfs-size %q: want a positive quantity such as 8Mi", *tmpfsSize)
	}
	o := Options{TmpfsSize: size.Value(), Region: *region, Namespace: *namespace}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *as != "" {
		ns, sa, ok := strings.Cut(*as, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(sa)) > 0 {
			return usage("--as %q: want NAMESPACE/SERVICEACCOUNT", *as)
		}
		dyn, err := dynamicClient(*kubeconfig)
		if err != nil {
			return usage("--as: %v", err)
		}
		if o.Namespace == "" {
			o.Namespace = ns
		}
		o.DryRun = &DryRunOptions{
			Namespace: ns, ServiceAccount: sa,
			Tokens:          KubeTokens{Client: dyn},
			ServiceAccounts: kube.ServiceAccounts{Client: dyn},
			AWS:             aws.Options{PodIdentityEndpoint: *podIdentity},
		}
	}
	var inputs []Input
	for _, f := range files {
		data, err := readInput(f, stdin)
		if err != nil {
			return usage("%v", err)
		}
		inputs = append(inputs, Input{Name: f, Data: data})
	}
	r := Run(ctx, inputs, o)
	if *output == "json" {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "podsecrets check: %v\n", err)
	}
	return r.Code()
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ", ") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// readInput reads the file name, or stdin for "-", at most maxInput bytes
// and one more (so that Documents sees a file too long).
func readInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// dynamicClient is a client of the cluster of path, or of kubectl's
// kubeconfig ($KUBECONFIG, ~/.kube/config) without one.
func dynamicClient(path string) (dynamic.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "podsecrets-check"
	return dynamic.NewForConfig(cfg)
}
