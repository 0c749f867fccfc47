using System.Runtime.Versioning;

// Backup files are created with Unix modes (0600 files, 0700 directories) and pg_dump runs as a Unix process.
[assembly: SupportedOSPlatform("linux")]
