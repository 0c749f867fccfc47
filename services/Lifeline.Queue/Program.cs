using Lifeline.Queue;
using Lifeline.ServiceDefaults.Hosting;
using StackExchange.Redis;

// Before any socket exists: socket completions run inline (see SocketCompletions).
SocketCompletions.RunInlineUnlessConfigured();
var app = QueueApplication.Build(args);
// Connect to Redis on this thread, never on a thread that completes socket operations.
app.Services.GetRequiredService<IConnectionMultiplexer>();
await app.RunAsync();
