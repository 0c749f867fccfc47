using System.Runtime.Versioning;

// The backup service runs on Linux only (Unix file modes, pg_dump child processes).
[assembly: SupportedOSPlatform("linux")]
