using System.Runtime.Versioning;

// These tests start the backup service, which runs on Linux only (Unix file modes, pg_dump child processes).
[assembly: SupportedOSPlatform("linux")]
