package postgres

// Test helpers for the external tests (package postgres_test).
var (
	OpenTest     = openTest
	NewSchema    = newSchema
	NeedPostgres = needPostgres
	ExecSQL      = execSQL
)
