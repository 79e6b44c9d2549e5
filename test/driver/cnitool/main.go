// Command cnitool is the test suite's container runtime stand-in: it drives
// CNI plugins through Debian's libcni (1.1.2) exactly as a runtime would, so
// the integration tests exercise the real libcni code paths (conflist
// chaining, prevResult, capability filtering, result cache) rather than a
// TypeScript imitation of them.
//
// It keeps upstream cnitool's command line and environment so the same
// invocations work with either tool:
//
//	cnitool add|check|del <net-name> <netns-path>
//
//	NETCONFPATH      directory of .conf/.conflist files (default /etc/cni/net.d)
//	CNI_PATH         plugin search path, colon separated
//	CNI_IFNAME       interface name in the container (default eth0)
//	CNI_ARGS         "K1=V1;K2=V2" passed to plugins as CNI_ARGS
//	CAP_ARGS         JSON object of runtime capability args (runtimeConfig)
//	CNI_CONTAINERID  container ID; default derived from a hash of the netns path
//	CNI_CACHE_DIR    libcni result cache (default /var/lib/cni); lets tests
//	                 keep their cached results apart (not in upstream cnitool)
//
// Output: ADD prints the result JSON on stdout. On failure the error text goes
// to stderr and the exit status is 1; when the failure is a CNI error object
// returned by a plugin, that object is also printed as JSON on stdout so tests
// can assert its code. libcni 1.1.2 predates GC and STATUS, so there are no
// such commands: tests run the plugin binary directly for those.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s add|check|del <net-name> <netns-path>\n", filepath.Base(os.Args[0]))
	os.Exit(2)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parseCNIArgs splits "K1=V1;K2=V2" into libcni's key/value pairs.
func parseCNIArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 || kv[0] == "" {
			return nil, fmt.Errorf("invalid CNI_ARGS pair %q", pair)
		}
		out = append(out, [2]string{kv[0], kv[1]})
	}
	return out, nil
}

func fail(err error) {
	// A plugin's CNI error object comes back from libcni as *types.Error;
	// echo it as JSON so a test can check the code, not just the message.
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		if b, jerr := json.Marshal(cniErr); jerr == nil {
			fmt.Println(string(b))
		}
	}
	fmt.Fprintf(os.Stderr, "cnitool: %v\n", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		usage()
	}
	command, netName, netns := os.Args[1], os.Args[2], os.Args[3]

	// LoadConfList finds a .conflist by name and otherwise wraps a single
	// .conf/.json of that name into a one-plugin list.
	confList, err := libcni.LoadConfList(envOr("NETCONFPATH", "/etc/cni/net.d"), netName)
	if err != nil {
		fail(err)
	}

	args, err := parseCNIArgs(os.Getenv("CNI_ARGS"))
	if err != nil {
		fail(err)
	}
	var capArgs map[string]interface{}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &capArgs); err != nil {
			fail(fmt.Errorf("CAP_ARGS is not a JSON object: %w", err))
		}
	}

	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		// Stable per netns, so ADD, CHECK and DEL of one netns agree
		// without the caller having to pass an ID.
		sum := sha256.Sum256([]byte(netns))
		containerID = "cnitool-" + hex.EncodeToString(sum[:])[:16]
	}

	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netns,
		IfName:         envOr("CNI_IFNAME", "eth0"),
		Args:           args,
		CapabilityArgs: capArgs,
	}
	cni := libcni.NewCNIConfigWithCacheDir(
		filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()

	switch command {
	case "add":
		result, err := cni.AddNetworkList(ctx, confList, rt)
		if err != nil {
			fail(err)
		}
		if result != nil {
			if err := result.PrintTo(os.Stdout); err != nil {
				fail(err)
			}
			fmt.Println() // PrintTo leaves the JSON without a final newline
		}
	case "check":
		if err := cni.CheckNetworkList(ctx, confList, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, confList, rt); err != nil {
			fail(err)
		}
	default:
		usage()
	}
}
