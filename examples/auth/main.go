// Command auth shows etcd's role-based access control: it creates a root
// user, a role that may read and write one key prefix and a user with that
// role, enables auth, and shows the user may write inside the prefix and is
// refused outside it. As root it then disables auth and removes what it
// created, so it can run again.
//
//	go run ./examples/auth -endpoints 127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	rootPassword := flag.String("root-password", "rootpw", "password of the root user")
	user := flag.String("user", "app", "user to create")
	password := flag.String("password", "apppw", "password of -user")
	role := flag.String("role", "app-rw", "role to create")
	prefix := flag.String("prefix", "examples/auth/", "key prefix the role may read and write")
	flag.Parse()
	eps := strings.Split(*endpoints, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// While auth is disabled, anyone may manage users and roles.
	admin := dial(eps, "", "")
	defer admin.Close()
	must(admin.RoleAdd(ctx, "root"))
	must(admin.UserAdd(ctx, "root", *rootPassword))
	must(admin.UserGrantRole(ctx, "root", "root"))
	must(admin.RoleAdd(ctx, *role))
	must(admin.RoleGrantPermission(ctx, *role, *prefix, clientv3.GetPrefixRangeEnd(*prefix), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(admin.UserAdd(ctx, *user, *password))
	must(admin.UserGrantRole(ctx, *user, *role))
	fmt.Printf("created user root, role %s (readwrite on prefix %s), user %s\n", *role, *prefix, *user)
	must(admin.AuthEnable(ctx))
	status, err := admin.AuthStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("auth enabled: %v\n", status.Enabled)

	// From here on every request needs credentials.
	root := dial(eps, "root", *rootPassword)
	defer root.Close()
	app := dial(eps, *user, *password)
	inside, outside := *prefix+"key", "examples/outside"
	_, errInside := app.Put(ctx, inside, "v")
	fmt.Printf("%s puts %s: err=%v\n", *user, inside, errInside)
	_, errOutside := app.Put(ctx, outside, "v")
	fmt.Printf("%s puts %s: err=%v\n", *user, outside, errOutside)
	app.Close()

	// Clean up as root before judging, so that a failed run does not leave
	// auth enabled.
	must(root.AuthDisable(ctx))
	must(root.Delete(ctx, *prefix, clientv3.WithPrefix()))
	must(root.UserDelete(ctx, *user))
	must(root.RoleDelete(ctx, *role))
	must(root.UserDelete(ctx, "root"))
	must(root.RoleDelete(ctx, "root"))
	fmt.Println("auth disabled; users and roles deleted")

	if errInside != nil {
		log.Fatalf("the write inside %s was refused: %v", *prefix, errInside)
	}
	if !errors.Is(errOutside, rpctypes.ErrPermissionDenied) {
		log.Fatalf("the write outside %s was not refused with %q: %v", *prefix, rpctypes.ErrPermissionDenied, errOutside)
	}
}

// dial connects as user, or without credentials when user is empty.
// Its logger is off: clientv3 would log the refused write as a warning,
// and the example prints the error itself.
func dial(endpoints []string, user, password string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 5 * time.Second,
		Username: user, Password: password,
		Logger: zap.NewNop(),
	})
	if err != nil {
		log.Fatal(err)
	}
	return cli
}

// must exits if a call failed; it takes the call's response only to let
// the call sit inside it.
func must(_ any, err error) {
	if err != nil {
		log.Fatal(err)
	}
}
