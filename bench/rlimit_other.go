//go:build !unix

package bench

func raiseFileLimit() {}
