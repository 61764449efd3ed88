//go:build !linux

package main

import "errors"

func ipvsServices() error { return errors.New("IPVS needs Linux") }
