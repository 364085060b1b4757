/* sim_tipsa.h - TIPSA (a SOAP 1.1 carrier that never pushes), simulated under /tipsa.
 *
 * Every call is POST /tipsa/SOAP?service=<service> with a SOAP envelope; the
 * method is the element inside soap:Body (any namespace prefix):
 *
 *   service=LoginWSService
 *     LoginWSService___LoginCli(strCodAge, strCod, strPass)
 *       -> LoginWSService___LoginCliResponse(strSesion, intCodAge)
 *   service=WebServService, with the session in the SOAP header:
 *       <soap:Header><ROClientIDHeader><ID>strSesion</ID></ROClientIDHeader></soap:Header>
 *     WebServService___GrabaEnvio4(strRef = our reference, strCPDes = postal code,
 *       strNomDes, strDirDes, strPobDes, strCodPais, intPaq, dPesoOri, ...)
 *       -> WebServService___GrabaEnvio4Response(strAlbaran = tracking number,
 *          strGuidOut); a new shipment on every call, even for a known strRef
 *     WebServService___ConsEnvEstadosRef(strRef)
 *       -> ...Response(strEnvEstadosRef): escaped XML, as the real service sends it:
 *          <CONSULTA><ENV_ESTADOS_REF V_ALBARAN="" V_REF="" V_COD_TIPO_EST=""
 *          V_DES_TIPO_EST="" D_FEC_HORA_ALTA=""/>...</CONSULTA> (empty when unknown:
 *          how a client finds out whether a create it timed out on was applied)
 *     WebServService___ConsEnvEstIncCambiosEstados(dtFecDesde (ISO 8601), intPagina
 *       (1..), intNumReg (1..500, default 100))
 *       -> ...Response(strEnvEstIncCambiosEstados: escaped <CONSULTA><CAMBIO_ESTADO
 *          V_ALBARAN V_REF V_COD_TIPO_EST V_DES_TIPO_EST D_FEC_HORA_ALTA/>...</CONSULTA>,
 *          intTotal, bMasPaginas): state changes after dtFecDesde, oldest first
 *
 * Status codes: 0 DOCUMENTADO (accepted), 1 TRANSITO, 2 REPARTO, 3 ENTREGADO,
 * 4 INCIDENCIA. Shipments move by the scripted delays (sim.webhook_delay_ms,
 * sim.transit_delay_ms, sim.deliver_delay_ms) and show in the feed; TIPSA sends no
 * webhooks. Errors are SOAP Faults (HTTP 500 unless an injected status):
 * <faultcode>SOAP-ENV:Client|Server</faultcode><faultstring/><detail><errorCode/>
 * </detail>; errorCode SESSION_EXPIRED for a missing, unknown or expired session
 * (sessions last token_ttl_s, sim.session_ttl_s at start), LOGIN_FAILED,
 * VALIDATION, BAD_REQUEST. Loop thread only. */
#ifndef SIM_TIPSA_H
#define SIM_TIPSA_H

struct sim;

void sim_tipsa_register(struct sim *s);

#endif
