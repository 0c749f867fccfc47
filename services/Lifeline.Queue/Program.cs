using Lifeline.Queue;

var app = QueueApplication.Build(args);
await app.RunAsync();
