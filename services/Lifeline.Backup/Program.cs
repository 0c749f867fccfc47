using Lifeline.Backup;

var app = BackupApplication.Build(args);
await app.RunAsync();
