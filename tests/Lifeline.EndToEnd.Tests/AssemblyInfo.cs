// The suite runs on Linux only (PostgreSQL as an OS user, /proc, Unix signals), like the AppHost it starts.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
