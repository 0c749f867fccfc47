using Lifeline.Recovery;

var app = RecoveryApplication.Build(args);
await app.RunAsync();
