using Lifeline.Checkpoint;

var app = CheckpointApplication.Build(args);
await app.RunAsync();
