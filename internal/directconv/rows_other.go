//go:build !amd64

package directconv

var rowsImpl = rowsGo

const hasAVX512 = false

func rowsFor(bool) func(*Rows) { return rowsGo }

var gradRowsImpl = gradRowsGo

func gradRowsFor(bool) func(*GradRows) { return gradRowsGo }
