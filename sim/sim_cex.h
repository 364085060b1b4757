/* sim_cex.h - Correos Express (a carrier that pushes tracking and reports
 * errors inside 200 answers), simulated under /cex.
 *
 *   POST /cex/WSEnvio_REST/grabacionEnvio   HTTP Basic; JSON {"ref" (our reference),
 *                                           "codPosNacDest" or "codPosIntDest", "paisISODest",
 *                                           "nomDest", "dirDest", "pobDest", "kilos", ...}
 *       -> ALWAYS 200 once authenticated: {"codigoRetorno":0,"mensajeRetorno":"",
 *          "datosResultado":"<tracking number>","listaBultos":[{"orden":1,"codUnico":"..."}]}
 *          or {"codigoRetorno":<n != 0>,"mensajeRetorno":"<why>","datosResultado":"",
 *          "listaBultos":[]} (n: 70 reference, 71 postal code, 10 bad body)
 *   POST /cex/seguimientoEnvio              HTTP Basic; JSON {"ref"} -> 200
 *       {"codigoRetorno":0,"datos":{"numEnvio","ref","envios":n,"estados":[...]}}, or
 *       codigoRetorno 1 "Envío no encontrado"
 *
 * Without valid Basic credentials: 401 (WWW-Authenticate). Injected faults (5xx, 429)
 * are real HTTP statuses with {"codigoRetorno":<status>,"mensajeRetorno":"..."}. Webhooks
 * to <sim.webhook_url>/api/v1/carriers/correos-express/webhook. Loop thread only. */
#ifndef SIM_CEX_H
#define SIM_CEX_H

struct sim;

void sim_cex_register(struct sim *s);

#endif
