package main

import (
	"crypto/rand"
	"fmt"
)

func randID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
